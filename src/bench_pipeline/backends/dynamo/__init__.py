"""torch.compile (dynamo): the compile stage that measures compile costs, and the runtime that compiles its own
module in the unit's worker."""
