"""The offline AWS emulator (an optional extra): a patched moto server whose Step Functions run
state machines and whose Batch runs jobs locally or in their image. Only this package imports moto."""
