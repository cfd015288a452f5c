namespace Tmem.Protocol;

/// <summary>
/// What a request asks for (byte 4 of a frame). A response carries its request's opcode with
/// <see cref="Wire.ResponseBit"/> set. docs/PROTOCOL.md gives each one's payload.
/// </summary>
public enum Opcode : byte
{
    /// <summary>Handshake: protocol version, client name and secret. Must be the first frame.</summary>
    Hello = 0x01,

    /// <summary>Create a pool, or join a shared one; answers the client's pool id.</summary>
    CreatePool = 0x02,

    /// <summary>Destroy (or leave) a pool.</summary>
    DestroyPool = 0x03,

    /// <summary>Store a page under a handle; answers a <see cref="PutStatus"/>.</summary>
    Put = 0x04,

    /// <summary>Read a page; answers hit (with the page) or miss.</summary>
    Get = 0x05,

    /// <summary>Remove one page; answers whether there was one.</summary>
    FlushPage = 0x06,

    /// <summary>Remove every page of an object; answers how many there were.</summary>
    FlushObject = 0x07,

    /// <summary>The store's counters, as (name, value) pairs.</summary>
    Stats = 0x08,

    /// <summary>The client's pools.</summary>
    ListPools = 0x09,

    /// <summary>Answers its payload back (a health check and round-trip time).</summary>
    Ping = 0x0A,

    /// <summary>An INFO-like report in sections (server, clients, requests, store, log, configuration), as UTF-8 text.</summary>
    Info = 0x0B,

    /// <summary>Administrator clients: the settings that can change at run time and their values.</summary>
    ConfigGet = 0x0C,

    /// <summary>Administrator clients: changes one setting at run time (the RAM budget, the log level).</summary>
    ConfigSet = 0x0D,

    /// <summary>Administrator clients: the connections open now.</summary>
    ClientList = 0x0E,

    /// <summary>Administrator clients: closes one connection by its id.</summary>
    ClientKill = 0x0F,
}
