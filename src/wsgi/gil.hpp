// Dropping the GIL only while a socket wait actually blocks.
#pragma once

#include "net/socket_io.hpp"

#include <Python.h>

namespace appserver::wsgi {

class GilRelease final : public net::BlockingScope {
public:
    void enter() noexcept override { saved_ = PyEval_SaveThread(); }
    void leave() noexcept override { PyEval_RestoreThread(saved_); }

private:
    PyThreadState* saved_ = nullptr;
};

} // namespace appserver::wsgi
