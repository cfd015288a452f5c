using Tmem;
using Tmem.Client;

// Compiles only if the client's dependencies leave .NET 10's System.Linq.AsyncEnumerable
// unambiguous; running it prints the first of three object ids.
var first = await ObjectIds().FirstAsync();
Console.WriteLine($"{first} ({typeof(TmemConnection).Assembly.GetName().Name} referenced)");

static async IAsyncEnumerable<ObjectId> ObjectIds()
{
    for (ulong i = 1; i <= 3; i++)
    {
        await Task.Yield();
        yield return new ObjectId(i);
    }
}
