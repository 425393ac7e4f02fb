"""The execution layer, between the stage families (curate, train, evaluate, serve) and the LLM layer:
the shard runner (`shards`), the model pool (`pool`) and a run's provenance (`provenance`). It knows nothing of
any stage; the stages hand it their steps."""
