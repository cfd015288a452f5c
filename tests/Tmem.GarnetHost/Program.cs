using Garnet;

// One Garnet node: the arguments are garnet-server's. It runs until its standard input closes
// (the parent went away) or it gets SIGTERM, so a test run that dies leaves no node behind.
using var server = new GarnetServer(args);
server.Start();
Console.WriteLine("garnet-host: started");
var stop = new TaskCompletionSource();
using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c =>
{
    c.Cancel = true;
    stop.TrySetResult();
});
_ = Task.Run(() =>
{
    try
    {
        while (Console.In.Read() >= 0) { }
    }
    catch (IOException)
    {
    }
    stop.TrySetResult();
});
await stop.Task;
