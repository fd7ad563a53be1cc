"""ModelFactory and OpenLoRA: LoRA adapters fine-tuned on published Datanet versions.

- ``base``: load a causal language model and its tokenizer from a local directory in the
  Hugging Face layout (safetensors only; nothing is ever downloaded).
- ``datanet``: a published Datanet version's contributions, read from a node over
  JSON-RPC, and their deterministic train / held-out split.
- ``factory``: fine-tune a LoRA adapter (peft), evaluate it, save it with its manifest.
- ``lora``: OpenLoRA's engine: adapters as tensors in a bounded LRU cache, applied at run
  time so that one batch mixes adapters.
- ``serve``: ``POST /v1/completions`` over the engine, each answer attributed on-chain.
- ``cli``: ``openledger-node model train`` and ``openledger-node serve-models``.

torch, transformers and peft are the optional ``ai`` extra (``pip install -e '.[ai]'``);
importing this package does not import them.
"""
