using System.Runtime.InteropServices;

namespace Tmem.RamTier;

/// <summary>
/// Sleeps shorter than a millisecond, which <see cref="Thread.Sleep(int)"/> and timed waits
/// cannot (they count whole milliseconds): nanosleep on Linux; elsewhere a millisecond's sleep.
/// </summary>
internal static partial class ShortSleep
{
    public static void Microseconds(int microseconds)
    {
        if (!OperatingSystem.IsLinux())
        {
            Thread.Sleep(1);
            return;
        }
        var request = new TimeSpec { Seconds = 0, Nanoseconds = microseconds * 1000L };
        // An interrupted sleep (EINTR) just ends early: the caller looks again sooner.
        Nanosleep(in request, IntPtr.Zero);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "nanosleep")]
    private static partial int Nanosleep(in TimeSpec request, IntPtr remaining);
}
