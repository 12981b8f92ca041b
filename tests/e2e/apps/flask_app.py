"""A small real Flask application served by appserver in the end-to-end tests."""

import hashlib

from flask import Flask, Response, jsonify, redirect, request, session, stream_with_context, url_for

app = Flask(__name__)
app.config["SECRET_KEY"] = "e2e-not-secret"
app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024


@app.get("/")
def index():
    return "flask ok"


@app.post("/json")
def echo_json():
    data = request.get_json()
    return jsonify(received=data, content_type=request.content_type)


@app.post("/form")
def form():
    return jsonify(fields=request.form.to_dict(flat=False))


@app.post("/upload")
def upload():
    f = request.files["file"]
    content = f.read()
    return jsonify(
        filename=f.filename,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        note=request.form.get("note"),
    )


@app.get("/stream")
def stream():
    count = int(request.args.get("n", 5))

    @stream_with_context
    def generate():
        # request is still usable inside the generator thanks to stream_with_context
        for i in range(count):
            yield f"line {i} of {request.args.get('n', 5)}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/urls")
def urls():
    return jsonify(
        index=url_for("index"),
        external=url_for("index", _external=True),
        script_root=request.script_root,
        path=request.path,
    )


@app.get("/redirect")
def go_elsewhere():
    return redirect(url_for("index"))


@app.get("/session/set")
def session_set():
    session["value"] = request.args["v"]
    return "stored"


@app.get("/session/get")
def session_get():
    return jsonify(value=session.get("value"))


@app.get("/error")
def error():
    raise ZeroDivisionError("flask route failure marker 51c2")
