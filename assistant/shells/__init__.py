"""The shells: how people reach the assistant. The top layer, above the core, distill and eval.

A shell is thin. It turns a click, a form or a command line into a call to a plain function below it
(`converse`, `import_file`, `label`, `build_dataset`, `retrain_from_file`, `run_eval`, `registry.rollback`,
a Store read) and turns the result or a domain error into something to show. It holds no logic a test
cannot reach without it: what a shell decides itself (how a reply is escaped, what a panel says) is a
module-level function that tests call directly.

- web.py: the server. One FastAPI app holding both Gradio apps; `serve` starts it.
- chat_page.py: the public chat, the only surface customers reach.
- console/: the signed-in console, one module per tab (Import, Label, Retrain, Report, Models).
- cli.py: the `assistant` command.

Nothing below this package imports from it.
"""
