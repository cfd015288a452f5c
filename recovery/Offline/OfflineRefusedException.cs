namespace Tmem.Recovery.Offline;

/// <summary>
/// An offline operation refused to start, and changed nothing: the directory is not a data
/// directory, there is no room for the backup, an import clashes with what the target holds, an
/// export file is damaged. The message says what and what to do.
/// </summary>
public sealed class OfflineRefusedException(string message, Exception? inner = null) : Exception(message, inner);
