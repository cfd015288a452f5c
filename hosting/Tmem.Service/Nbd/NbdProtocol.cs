namespace Tmem.Service.Nbd;

/// <summary>
/// Numbers of the NBD protocol (doc/proto.md of the NetworkBlockDevice/nbd project): the fixed
/// newstyle handshake, options and their replies, transmission requests, replies and errors.
/// Every integer on the wire is big-endian.
/// </summary>
internal static class NbdProtocol
{
    public const ulong InitPasswd = 0x4e42444d41474943UL;     // "NBDMAGIC"
    public const ulong OptionMagic = 0x49484156454F5054UL;    // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x3e889045565a9UL;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;

    // Handshake flags (server) and client flags.
    public const ushort FlagFixedNewstyle = 1 << 0;
    public const ushort FlagNoZeroes = 1 << 1;
    public const uint ClientFlagFixedNewstyle = 1 << 0;
    public const uint ClientFlagNoZeroes = 1 << 1;

    // Options.
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptStartTls = 5;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint OptListMetaContext = 9;
    public const uint OptSetMetaContext = 10;

    // Option replies.
    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepMetaContext = 4;
    public const uint RepErrUnsup = 0x80000001;
    public const uint RepErrPolicy = 0x80000002;
    public const uint RepErrInvalid = 0x80000003;
    public const uint RepErrUnknown = 0x80000006;
    public const uint RepErrShutdown = 0x80000007;
    public const uint RepErrTooBig = 0x80000009;

    // NBD_INFO types.
    public const ushort InfoExport = 0;
    public const ushort InfoName = 1;
    public const ushort InfoDescription = 2;
    public const ushort InfoBlockSize = 3;

    // Transmission flags.
    public const ushort TxHasFlags = 1 << 0;
    public const ushort TxReadOnly = 1 << 1;
    public const ushort TxSendFlush = 1 << 2;
    public const ushort TxSendFua = 1 << 3;
    public const ushort TxSendTrim = 1 << 5;
    public const ushort TxSendWriteZeroes = 1 << 6;
    public const ushort TxSendDf = 1 << 7;
    public const ushort TxCanMultiConn = 1 << 8;
    public const ushort TxSendCache = 1 << 10;
    public const ushort TxSendFastZero = 1 << 11;

    // Commands.
    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisc = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdCache = 5;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdBlockStatus = 7;

    // Command flags.
    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;
    public const ushort CmdFlagDf = 1 << 2;
    public const ushort CmdFlagReqOne = 1 << 3;
    public const ushort CmdFlagFastZero = 1 << 4;

    // Structured reply flags and types.
    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeOffsetHole = 2;
    public const ushort ReplyTypeBlockStatus = 5;
    public const ushort ReplyTypeError = 0x8001;

    // base:allocation flags.
    public const uint StateHole = 1 << 0;
    public const uint StateZero = 1 << 1;

    // Errors.
    public const uint EPERM = 1;
    public const uint EIO = 5;
    public const uint ENOMEM = 12;
    public const uint EINVAL = 22;
    public const uint ENOSPC = 28;
    public const uint EOVERFLOW = 75;
    public const uint ENOTSUP = 95;
    public const uint ESHUTDOWN = 108;

    public const int RequestHeaderSize = 28;
    public const int SimpleReplyHeaderSize = 16;
    public const int StructuredReplyHeaderSize = 20;

    /// <summary>The one metadata context served, and the id it is given.</summary>
    public const string BaseAllocation = "base:allocation";
    public const uint BaseAllocationId = 1;

    public static string CommandName(ushort type) => type switch
    {
        CmdRead => "READ",
        CmdWrite => "WRITE",
        CmdDisc => "DISC",
        CmdFlush => "FLUSH",
        CmdTrim => "TRIM",
        CmdCache => "CACHE",
        CmdWriteZeroes => "WRITE_ZEROES",
        CmdBlockStatus => "BLOCK_STATUS",
        _ => $"command {type}",
    };

    public static string OptionName(uint option) => option switch
    {
        OptExportName => "NBD_OPT_EXPORT_NAME",
        OptAbort => "NBD_OPT_ABORT",
        OptList => "NBD_OPT_LIST",
        OptStartTls => "NBD_OPT_STARTTLS",
        OptInfo => "NBD_OPT_INFO",
        OptGo => "NBD_OPT_GO",
        OptStructuredReply => "NBD_OPT_STRUCTURED_REPLY",
        OptListMetaContext => "NBD_OPT_LIST_META_CONTEXT",
        OptSetMetaContext => "NBD_OPT_SET_META_CONTEXT",
        _ => $"option {option}",
    };
}
