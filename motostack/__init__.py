"""motostack: run an AWS SAM template on this machine, with moto standing in for AWS.

SAM's own translator turns the template into CloudFormation, moto's CloudFormation creates the
resources in moto's server (what it skips or cannot do is filled in from the template itself:
motostack.deploy), every function runs in a worker process of its own with the environment the
template gives it and Lambda's asynchronous semantics (motostack.runtime, motostack.worker), moto's
EventBridge rule matching delivers to the functions over Lambda's Invoke API
(motostack.lambda_targets), and the template's HTTP API routes are served in front of their
function. It knows nothing of the project that runs it: everything project-specific comes in
motostack.launcher.Settings.

Speed patches to moto (motostack.speedups) are opt-in: the server applies those that
Settings.speedups names (none by default); anything else runs on moto as it ships.
"""
