/// @file version.hpp
/// The redkit version; CMake reads the three numbers from here. Thread safety: macros only.
#pragma once

/// Major version: changes that break the API or the stored formats.
#define REDKIT_VERSION_MAJOR 0
/// Minor version: additions.
#define REDKIT_VERSION_MINOR 1
/// Patch version: fixes.
#define REDKIT_VERSION_PATCH 0
/// The version as text, "MAJOR.MINOR.PATCH".
#define REDKIT_VERSION "0.1.0"
