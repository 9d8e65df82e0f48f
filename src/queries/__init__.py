"""The read side: projections, the projector, queries, consistency waits and notifications."""
