"""The local runtime: the graph walk, the attempt engine and its launchers, a task's data, the
reaper and the console. It never imports AWS code."""
