"""What a user reads of a flow or a run: the graph as text or mermaid, and a run's HTML report."""
