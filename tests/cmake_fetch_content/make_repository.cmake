# cmake -DGIT=<git> -DSOURCE=<redkit checkout> -DREPOSITORY=<dir> -P make_repository.cmake
#
# Makes REPOSITORY a fresh git repository whose branch main holds the files
# of SOURCE's HEAD commit (git archive, so a shallow or detached checkout
# works too; uncommitted changes are not included), for the FetchContent
# consumer to clone.
foreach(var GIT SOURCE REPOSITORY)
  if(NOT ${var})
    message(FATAL_ERROR "make_repository.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "make_repository.cmake: '${ARGN}' failed: ${rc}")
  endif()
endfunction()

file(REMOVE_RECURSE "${REPOSITORY}")
file(MAKE_DIRECTORY "${REPOSITORY}")
set(archive "${REPOSITORY}.tar")
run("${GIT}" -C "${SOURCE}" archive --format=tar -o "${archive}" HEAD)
run("${CMAKE_COMMAND}" -E chdir "${REPOSITORY}" "${CMAKE_COMMAND}" -E tar xf "${archive}")
file(REMOVE "${archive}")
run("${GIT}" -C "${REPOSITORY}" init -q)
run("${GIT}" -C "${REPOSITORY}" checkout -q -b main)
run("${GIT}" -C "${REPOSITORY}" add -A)
run("${GIT}" -C "${REPOSITORY}" -c user.name=redkit-test -c user.email=redkit-test@localhost
    -c commit.gpgsign=false commit -q -m "redkit for the FetchContent consumer test")
