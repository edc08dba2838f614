"""The Gradio Space that compares a leaf with its teacher, and its export as a Space folder."""
