/// @file version.hpp
/// The redkit version; CMake reads the three numbers from here. Thread safety: macros only.
#pragma once

#define REDKIT_VERSION_MAJOR 0
#define REDKIT_VERSION_MINOR 1
#define REDKIT_VERSION_PATCH 0
#define REDKIT_VERSION "0.1.0"
