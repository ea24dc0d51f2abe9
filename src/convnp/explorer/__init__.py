"""``convnp explore``: the tutorials' interactive panels, live on your own model, in a local web page.

    import convnp
    from convnp.explorer import Explorer, serve
    serve(my_model, info)                  # http://127.0.0.1:8765/ until Ctrl-C
    ex = Explorer(my_model, info)          # the same computations without HTTP (tests, other tools)
    ex.forward({"sample": 0})["top"]

Every number the page shows comes from convnp: forward passes traced with ``convnp.inspect.trace``, the
layer tables of ``convnp.summary``, convolutions by ``convnp.functional.conv2d``.  The page itself
(``static/``: hand-written HTML, CSS and ES modules, no build step, no request to any other host) only
draws them.  The JSON API is documented in docs/explorer.md.
"""
from .arrays import RequestError, decode, encode
from .core import Explorer
from .live import TrainingMonitor
from .server import ExplorerServer, start

__all__ = ["Explorer", "ExplorerServer", "RequestError", "TrainingMonitor", "serve", "start", "encode", "decode"]


def serve(model, info=None, *, host="127.0.0.1", port=8765, open_browser=False, input_size=None, samples=None,
          log=print):
    """Serve the explorer for ``model`` (any convnp.nn.Module) until Ctrl-C; returns 0.

    ``info``: a Checkpoint or {'preprocessing': {...}} (input size, normalisation, classes); without it
    give ``input_size`` (C, H, W) for a model convnp.models does not list.
    """
    from .server import check_host

    explorer = model if isinstance(model, Explorer) else Explorer(model, info, input_size=input_size,
                                                                  samples=samples)
    server = start(explorer, host, port)
    warning = check_host(host)
    if warning and log:
        log(warning)
    if log:
        log(f"convnp explore: serving {explorer.summary.model_name if explorer.model else 'the live view'} at "
            f"{server.url} (Ctrl-C stops)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        if log:
            log("convnp explore: stopped")
    finally:
        server.shutdown()
        server.server_close()
    return 0
