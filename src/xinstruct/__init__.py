"""xinstruct: cross-lingual instruction data for low-resource languages (X-Instruction, x-LLM, xLLMs-100)."""

__version__ = "0.1.0"
