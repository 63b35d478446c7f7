"""Asking Certainly for exports: the API client, the window planner and the requester."""
