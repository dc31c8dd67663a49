# FindRedkitHiredis
# -----------------
# Finds hiredis for redkit and defines the IMPORTED INTERFACE target
# redkit::hiredis. Tries, in order:
#   1. a hiredis::hiredis target that already exists (hiredis add_subdirectory'd);
#   2. upstream hiredis 1.x's CMake package, which defines hiredis::hiredis;
#   3. pkg-config's hiredis;
#   4. a plain search for the header and the library.
# It never asks for a package named "Hiredis": Debian 12's libhiredis-dev
# 0.14.1 ships a HiredisConfig.cmake that defines no target and whose version
# file fails.
#
# redkit includes <hiredis/hiredis.h>, while Debian's hiredis.pc puts
# /usr/include/hiredis on the include path, so the directory that holds
# hiredis/hiredis.h is added as well.
#
# Result variables:
#   RedkitHiredis_FOUND
#   RedkitHiredis_VERSION      from HIREDIS_MAJOR/MINOR/PATCH in hiredis.h, or
#                              hiredis_VERSION when hiredis::hiredis is used
#   RedkitHiredis_INCLUDE_DIR  the directory that holds hiredis/hiredis.h
#                              (not searched when hiredis::hiredis is used)

set(redkit_hiredis_link "")

if(TARGET hiredis::hiredis)
  set(redkit_hiredis_link hiredis::hiredis)
else()
  find_package(hiredis 1 CONFIG QUIET)
  if(TARGET hiredis::hiredis)
    set(redkit_hiredis_link hiredis::hiredis)
  endif()
endif()

if(NOT redkit_hiredis_link)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(RedkitHiredis_PC QUIET IMPORTED_TARGET hiredis)
  endif()
endif()

if(redkit_hiredis_link)
  # The target carries its own include directories.
  set(RedkitHiredis_VERSION "${hiredis_VERSION}")
else()
  set(redkit_hiredis_hints "")
  foreach(dir IN LISTS RedkitHiredis_PC_INCLUDE_DIRS)
    list(APPEND redkit_hiredis_hints "${dir}" "${dir}/..")
  endforeach()
  find_path(RedkitHiredis_INCLUDE_DIR NAMES hiredis/hiredis.h HINTS ${redkit_hiredis_hints})
  if(TARGET PkgConfig::RedkitHiredis_PC)
    set(redkit_hiredis_link PkgConfig::RedkitHiredis_PC)
  else()
    find_library(RedkitHiredis_LIBRARY NAMES hiredis)
    set(redkit_hiredis_link "${RedkitHiredis_LIBRARY}")
  endif()
  if(RedkitHiredis_INCLUDE_DIR)
    file(STRINGS "${RedkitHiredis_INCLUDE_DIR}/hiredis/hiredis.h" redkit_hiredis_defines
         REGEX "^#define HIREDIS_(MAJOR|MINOR|PATCH) ")
    foreach(part MAJOR MINOR PATCH)
      string(REGEX MATCH "HIREDIS_${part} +([0-9]+)" unused "${redkit_hiredis_defines}")
      set(redkit_hiredis_${part} "${CMAKE_MATCH_1}")
    endforeach()
    set(RedkitHiredis_VERSION
        "${redkit_hiredis_MAJOR}.${redkit_hiredis_MINOR}.${redkit_hiredis_PATCH}")
  endif()
endif()

include(FindPackageHandleStandardArgs)
if(redkit_hiredis_link STREQUAL "hiredis::hiredis")
  find_package_handle_standard_args(RedkitHiredis
    REQUIRED_VARS redkit_hiredis_link
    VERSION_VAR RedkitHiredis_VERSION)
else()
  find_package_handle_standard_args(RedkitHiredis
    REQUIRED_VARS redkit_hiredis_link RedkitHiredis_INCLUDE_DIR
    VERSION_VAR RedkitHiredis_VERSION)
endif()

if(RedkitHiredis_FOUND AND NOT TARGET redkit::hiredis)
  add_library(redkit::hiredis INTERFACE IMPORTED)
  target_link_libraries(redkit::hiredis INTERFACE ${redkit_hiredis_link})
  if(RedkitHiredis_INCLUDE_DIR)
    target_include_directories(redkit::hiredis INTERFACE "${RedkitHiredis_INCLUDE_DIR}")
  endif()
endif()

mark_as_advanced(RedkitHiredis_INCLUDE_DIR RedkitHiredis_LIBRARY)
