"""For tests/e2e/test_debug.py: a view that stops in pdb (appserver --debug) and then
answers with the request path."""


def app(environ, start_response):
    breakpoint()  # noqa: T100 - the point of the test
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
