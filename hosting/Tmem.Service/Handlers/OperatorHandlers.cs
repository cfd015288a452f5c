using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Tmem.Protocol;
using Tmem.Service.Operators;
using Tmem.Service.Sessions;

namespace Tmem.Service.Handlers;

/// <summary>Ping (0x0A): answers its payload back, for health checks and round-trip times.</summary>
internal sealed class PingHandler : RequestHandler
{
    public override Opcode Opcode => Opcode.Ping;

    public override int PoolIdOf(ReadOnlySpan<byte> payload) => -1;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload) => context.Respond((byte)Opcode.Ping, id, ProtocolStatus.Ok, payload);
}

/// <summary>Info (0x0B): the INFO-like report (<see cref="InfoReport"/>) as UTF-8 text.</summary>
internal sealed class InfoHandler(InfoReport report) : RequestHandler
{
    public override Opcode Opcode => Opcode.Info;

    public override int PoolIdOf(ReadOnlySpan<byte> payload) => -1;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(context, id, payload, 0)) return;
        context.Respond((byte)Opcode.Info, id, ProtocolStatus.Ok, Encoding.UTF8.GetBytes(report.Build()));
    }
}

/// <summary>ConfigGet (0x0C), administrators: a key or pattern (UTF-8, empty for all); answers <c>key=value</c> lines.</summary>
internal sealed class ConfigGetHandler(RuntimeSettings settings) : RequestHandler
{
    public override Opcode Opcode => Opcode.ConfigGet;

    public override int PoolIdOf(ReadOnlySpan<byte> payload) => -1;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckAdmin(context, id)) return;
        var lines = new StringBuilder();
        foreach (var (key, value) in settings.Get(Encoding.UTF8.GetString(payload).Trim())) lines.Append(key).Append('=').Append(value).Append('\n');
        context.Respond((byte)Opcode.ConfigGet, id, ProtocolStatus.Ok, Encoding.UTF8.GetBytes(lines.ToString()));
    }
}

/// <summary>ConfigSet (0x0D), administrators: <c>key=value</c> (UTF-8); answers <c>key=value</c> as now in force.</summary>
internal sealed class ConfigSetHandler(RuntimeSettings settings) : RequestHandler
{
    public override Opcode Opcode => Opcode.ConfigSet;

    public override int PoolIdOf(ReadOnlySpan<byte> payload) => -1;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckAdmin(context, id)) return;
        string text = Encoding.UTF8.GetString(payload);
        int equals = text.IndexOf('=', StringComparison.Ordinal);
        if (equals <= 0)
        {
            context.RespondError((byte)Opcode.ConfigSet, id, ProtocolStatus.InvalidArgument, "ConfigSet payload must be KEY=VALUE");
            return;
        }
        string key = text[..equals].Trim();
        string? value = settings.TrySet(key, text[(equals + 1)..].Trim(), context.Session!.Name, out string? error);
        if (value is null)
        {
            context.RespondError((byte)Opcode.ConfigSet, id, ProtocolStatus.InvalidArgument, error!);
            return;
        }
        context.Respond((byte)Opcode.ConfigSet, id, ProtocolStatus.Ok, Encoding.UTF8.GetBytes($"{key}={value}"));
    }
}

/// <summary>
/// ClientList (0x0E), administrators: one line per open connection, space-separated
/// <c>key=value</c> fields (as Redis's CLIENT LIST): id, client, client_id, admin, peer, uid,
/// pid, since, age_seconds, requests, in_flight, queued_bytes.
/// </summary>
internal sealed class ClientListHandler(ConnectionRegistry connections) : RequestHandler
{
    public override Opcode Opcode => Opcode.ClientList;

    public override int PoolIdOf(ReadOnlySpan<byte> payload) => -1;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckAdmin(context, id) || !CheckLength(context, id, payload, 0)) return;
        var now = DateTimeOffset.UtcNow;
        var lines = new StringBuilder();
        foreach (var c in connections.List())
        {
            var s = c.Session;
            lines.Append(CultureInfo.InvariantCulture, $"id={c.Id} client={Field(s?.Name ?? "-")} client_id={(s is null ? "-" : s.ClientId.ToString(CultureInfo.InvariantCulture))} admin={(s?.Client.Options.Admin == true ? "yes" : "no")}");
            lines.Append(CultureInfo.InvariantCulture, $" peer={(c.Credentials is null ? Field(c.Peer) : "unix")} uid={(c.Credentials is { } u ? u.Uid.ToString(CultureInfo.InvariantCulture) : "-")} pid={(c.Credentials is { } p ? p.Pid.ToString(CultureInfo.InvariantCulture) : "-")}");
            lines.Append(CultureInfo.InvariantCulture, $" since={c.ConnectedAt:O} age_seconds={(long)(now - c.ConnectedAt).TotalSeconds} requests={c.Requests} in_flight={c.InFlight} queued_bytes={c.QueuedBytes}\n");
        }
        context.Respond((byte)Opcode.ClientList, id, ProtocolStatus.Ok, Encoding.UTF8.GetBytes(lines.ToString()));
    }

    /// <summary>A value with no space or control character in it.</summary>
    private static string Field(string value) => LogText.Escape(value).Replace(" ", "\\x20", StringComparison.Ordinal);
}

/// <summary>ClientKill (0x0F), administrators: a connection id (<c>u64</c>); answers <c>u8</c> 1 if it was open (it closes), else 0.</summary>
internal sealed partial class ClientKillHandler(ConnectionRegistry connections, ILogger<ClientKillHandler> logger) : RequestHandler
{
    private readonly ILogger _logger = logger;

    public override Opcode Opcode => Opcode.ClientKill;

    public override int PoolIdOf(ReadOnlySpan<byte> payload) => -1;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckAdmin(context, id) || !CheckLength(context, id, payload, 8)) return;
        long target = (long)BinaryPrimitives.ReadUInt64LittleEndian(payload);
        bool killed = connections.Kill(target);
        if (killed) LogKill(context.Session!.Name, target);
        context.RespondByte((byte)Opcode.ClientKill, id, killed ? (byte)1 : (byte)0);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Client {Client} closed connection {Id} (ClientKill)")]
    private partial void LogKill(string client, long id);
}
