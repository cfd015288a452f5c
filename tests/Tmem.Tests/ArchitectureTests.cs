using System.Reflection;

namespace Tmem.Tests;

/// <summary>
/// The engine's layering, checked on the compiled assembly: the RAM tier knows neither the
/// translation nor the log tier (it sees pages through PageOwner and ITierBelow), and codecs
/// know neither. Checks every type's base type, interfaces, fields, properties and method
/// signatures in those namespaces.
/// </summary>
[Trait("Kind", "Unit")]
public sealed class ArchitectureTests
{
    private static readonly Assembly Engine = typeof(TmemStore).Assembly;

    [Theory]
    [InlineData("Tmem.RamTier", new[] { "Tmem.Translation", "Tmem.LogTier", "Tmem.RemoteTier" })]
    [InlineData("Tmem.RemoteTier", new[] { "Tmem.Translation", "Tmem.LogTier" })]
    [InlineData("Tmem.Compression", new[] { "Tmem.Translation", "Tmem.LogTier", "Tmem.RamTier" })]
    [InlineData("Tmem.Translation.Admission", new[] { "Tmem.LogTier", "Tmem.RamTier" })]
    public void Namespace_DoesNotDependOn(string layer, string[] forbidden)
    {
        var offenders = new List<string>();
        foreach (var type in Engine.GetTypes().Where(t => t.Namespace == layer))
            foreach (var used in Signature(type))
                if (used.Namespace is { } ns && forbidden.Any(f => ns == f || ns.StartsWith(f + ".", StringComparison.Ordinal)))
                    offenders.Add($"{type.FullName} uses {used.FullName}");
        Assert.Contains(Engine.GetTypes(), t => t.Namespace == layer);
        Assert.Empty(offenders);
    }

    /// <summary>
    /// The engine takes no network client: the remote tier's Redis client lives in Tmem.Remote,
    /// which reaches the engine only through its public seam (IRemotePageStore) and needs nothing
    /// but the engine, the contracts, the runtime and StackExchange.Redis.
    /// </summary>
    [Fact]
    public void RemoteTierClient_IsItsOwnAssembly_OverThePublicSeam()
    {
        Assert.DoesNotContain(Engine.GetReferencedAssemblies(), a => a.Name!.StartsWith("StackExchange", StringComparison.Ordinal));
        var remote = typeof(Tmem.Remote.RedisRemotePageStore).Assembly;
        var allowed = new[] { "Tmem.Tiers", "Tmem.Contracts", "StackExchange.Redis", "System", "Microsoft.Extensions" };
        var references = remote.GetReferencedAssemblies().Select(a => a.Name!).ToList();
        Assert.Contains("Tmem.Tiers", references);
        Assert.All(references, name => Assert.True(allowed.Any(a => name == a || name.StartsWith(a + ".", StringComparison.Ordinal)), $"Tmem.Remote references {name}"));
        Assert.True(typeof(IRemotePageStore).IsPublic);
        var engineUsed = remote.GetTypes().SelectMany(Signature).Where(t => t.Assembly == Engine).Distinct().ToList();
        Assert.All(engineUsed, t => Assert.True(t.IsPublic || t.IsNestedPublic, $"Tmem.Remote uses the engine's {t.FullName}"));
    }

    private static IEnumerable<Type> Signature(Type type)
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var types = new List<Type>();
        if (type.BaseType is { } b) types.Add(b);
        types.AddRange(type.GetInterfaces());
        types.AddRange(type.GetFields(all).Select(f => f.FieldType));
        types.AddRange(type.GetProperties(all).Select(p => p.PropertyType));
        foreach (var m in type.GetMethods(all).Cast<MethodBase>().Concat(type.GetConstructors(all)))
        {
            if (m is MethodInfo mi) types.Add(mi.ReturnType);
            types.AddRange(m.GetParameters().Select(p => p.ParameterType));
        }
        return types.SelectMany(Unwrap);
    }

    private static IEnumerable<Type> Unwrap(Type t)
    {
        if (t.HasElementType) return Unwrap(t.GetElementType()!);
        if (t.IsGenericType) return t.GetGenericArguments().SelectMany(Unwrap).Append(t.GetGenericTypeDefinition());
        return [t];
    }
}
