"""HTTP surfaces, one blueprint each; none of them imports torch."""
