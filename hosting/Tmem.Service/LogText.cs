using System.Globalization;
using System.Text;

namespace Tmem.Service;

/// <summary>
/// Peer-supplied text made safe for a log line: control characters (C0, DEL, C1 and the Unicode
/// line and paragraph separators) become <c>\xNN</c> or <c>\uNNNN</c> and a backslash
/// <c>\\</c>, so a client cannot start a forged log line, move the cursor or ring a bell on an
/// operator's terminal. Long text is cut at 256 characters (marked with an ellipsis).
/// </summary>
internal static class LogText
{
    private const int MaxChars = 256;

    public static string Escape(string text)
    {
        bool clean = text.Length <= MaxChars;
        foreach (char c in text)
        {
            if (NeedsEscape(c))
            {
                clean = false;
                break;
            }
        }
        if (clean) return text;
        var builder = new StringBuilder(Math.Min(text.Length, MaxChars) + 16);
        foreach (char c in text.AsSpan(0, Math.Min(text.Length, MaxChars)))
        {
            if (c == '\\') builder.Append(@"\\");
            else if (c < 0x100 && NeedsEscape(c)) builder.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
            else if (NeedsEscape(c)) builder.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            else builder.Append(c);
        }
        if (text.Length > MaxChars) builder.Append('…');
        return builder.ToString();
    }

    private static bool NeedsEscape(char c) => c < 0x20 || c is '\\' or (>= '\x7f' and <= '\x9f') or '\u2028' or '\u2029';
}
