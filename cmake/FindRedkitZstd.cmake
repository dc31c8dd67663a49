# FindRedkitZstd
# --------------
# Finds libzstd for <redkit/compressed.hpp> and defines the IMPORTED
# INTERFACE target redkit::libzstd. Tries, in order:
#   1. a zstd::libzstd_shared or zstd::libzstd_static target that already
#      exists (zstd add_subdirectory'd, or its CMake package found already);
#   2. pkg-config's libzstd;
#   3. a plain search for zstd.h and the library.
#
# Result variables:
#   RedkitZstd_FOUND
#   RedkitZstd_VERSION      from ZSTD_VERSION_MAJOR/MINOR/RELEASE in zstd.h, or
#                           pkg-config's version
#   RedkitZstd_INCLUDE_DIR  the directory that holds zstd.h (not searched when
#                           a zstd target is used)

set(redkit_zstd_link "")

if(TARGET zstd::libzstd_shared)
  set(redkit_zstd_link zstd::libzstd_shared)
elseif(TARGET zstd::libzstd_static)
  set(redkit_zstd_link zstd::libzstd_static)
endif()

if(NOT redkit_zstd_link)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(RedkitZstd_PC QUIET IMPORTED_TARGET libzstd)
  endif()
  find_path(RedkitZstd_INCLUDE_DIR NAMES zstd.h HINTS ${RedkitZstd_PC_INCLUDE_DIRS})
  if(TARGET PkgConfig::RedkitZstd_PC)
    set(redkit_zstd_link PkgConfig::RedkitZstd_PC)
  else()
    find_library(RedkitZstd_LIBRARY NAMES zstd)
    set(redkit_zstd_link "${RedkitZstd_LIBRARY}")
  endif()
  if(RedkitZstd_INCLUDE_DIR AND EXISTS "${RedkitZstd_INCLUDE_DIR}/zstd.h")
    file(STRINGS "${RedkitZstd_INCLUDE_DIR}/zstd.h" redkit_zstd_defines
         REGEX "^#define ZSTD_VERSION_(MAJOR|MINOR|RELEASE) ")
    foreach(part MAJOR MINOR RELEASE)
      string(REGEX MATCH "ZSTD_VERSION_${part} +([0-9]+)" unused "${redkit_zstd_defines}")
      set(redkit_zstd_${part} "${CMAKE_MATCH_1}")
    endforeach()
    set(RedkitZstd_VERSION "${redkit_zstd_MAJOR}.${redkit_zstd_MINOR}.${redkit_zstd_RELEASE}")
  endif()
endif()

include(FindPackageHandleStandardArgs)
if(redkit_zstd_link MATCHES "^zstd::")
  find_package_handle_standard_args(RedkitZstd REQUIRED_VARS redkit_zstd_link)
else()
  find_package_handle_standard_args(RedkitZstd
    REQUIRED_VARS redkit_zstd_link RedkitZstd_INCLUDE_DIR
    VERSION_VAR RedkitZstd_VERSION)
endif()

if(RedkitZstd_FOUND AND NOT TARGET redkit::libzstd)
  add_library(redkit::libzstd INTERFACE IMPORTED)
  target_link_libraries(redkit::libzstd INTERFACE ${redkit_zstd_link})
  if(RedkitZstd_INCLUDE_DIR)
    target_include_directories(redkit::libzstd INTERFACE "${RedkitZstd_INCLUDE_DIR}")
  endif()
endif()

mark_as_advanced(RedkitZstd_INCLUDE_DIR RedkitZstd_LIBRARY)
