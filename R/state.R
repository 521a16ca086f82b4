# The package's state: everything metaflow keeps between calls in one R session, in one environment.
#
#   backend, modules     the Python backend once started, and its modules imported so far (backend.R)
#   rules, protocol,     the tables R shares with the backend (data/rules.json, data/protocol.json,
#   conditions           data/errors.json), each read once (backend-rules.R, backend-protocol.R, errors.R)
#   namespace            the Client API's namespace; unset means the user's own (client-namespace.R)
#   task                 the context of the task this process is running, NULL outside one (task.R)
#   defined_flow,        a script that built a flow under a command but never reached run() is told so
#   expecting_run, ran   when R exits (flow.R, run.R)
the <- new.env(parent = emptyenv())
