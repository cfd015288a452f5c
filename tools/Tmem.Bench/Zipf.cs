namespace Tmem.Bench;

/// <summary>Draws ranks 0..n-1 with P(k) proportional to 1/(k+1)^s, by inverse CDF (binary search).</summary>
internal sealed class Zipf
{
    private readonly double[] _cdf;
    private readonly Random _random;

    public Zipf(int n, double s, int seed)
    {
        _cdf = new double[n];
        double sum = 0;
        for (int k = 0; k < n; k++)
        {
            sum += 1.0 / Math.Pow(k + 1, s);
            _cdf[k] = sum;
        }
        for (int k = 0; k < n; k++) _cdf[k] /= sum;
        _random = new Random(seed);
    }

    public int Next()
    {
        int i = Array.BinarySearch(_cdf, _random.NextDouble());
        return Math.Min(i < 0 ? ~i : i, _cdf.Length - 1);
    }
}
