// The timeout tests measure how long gets take: test classes run one at a time, so that on a
// small machine one class's cluster does not starve another's.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
