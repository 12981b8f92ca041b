// Unit test entry point: one embedded interpreter for the whole run (never one per test).
#include <gtest/gtest.h>
#include <pybind11/embed.h>

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    pybind11::scoped_interpreter interpreter;
    return RUN_ALL_TESTS();
}
