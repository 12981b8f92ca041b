// Dropping the GIL only while a socket wait actually blocks.
#pragma once

#include "net/socket_io.hpp"

#include <Python.h>

#include <unistd.h>

namespace appserver::wsgi {

class GilRelease final : public net::BlockingScope {
public:
    void enter() noexcept override { saved_ = PyEval_SaveThread(); }
    void leave() noexcept override { PyEval_RestoreThread(saved_); }

private:
    PyThreadState* saved_ = nullptr;
};

// Waits, GIL dropped, until another Python thread clears a flag it set under the GIL (a
// wsgi.input read or a write() an app thread still has in progress). Rare (an app bug),
// bounded by that thread's own socket timeout, so polling is enough.
inline void wait_until_cleared(const int& flag) {
    while (flag != 0) {
        Py_BEGIN_ALLOW_THREADS
        ::usleep(1000);
        Py_END_ALLOW_THREADS
    }
}

} // namespace appserver::wsgi
