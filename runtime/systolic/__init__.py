"""The systolic-array machine: functional simulator, timing model and reports (ARCHITECTURE.md §7)."""
