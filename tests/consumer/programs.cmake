# The programs every consumer project builds once it has redkit's targets:
# redkit_consumer (redkit::redkit), and one program per component the
# outer build expects (REDKIT_EXPECT_COMPONENTS: json, zstd, tls) linking
# only redkit::<component>. Each is a CTest test of the consumer project,
# run by the outer test's --test-command.
enable_testing()
# Passed as json,zstd,tls (a semicolon would split the test's argument).
string(REPLACE "," ";" REDKIT_EXPECT_COMPONENTS "${REDKIT_EXPECT_COMPONENTS}")
set(redkit_consumer_sources "${CMAKE_CURRENT_LIST_DIR}")

add_executable(redkit_consumer "${redkit_consumer_sources}/main.cpp")
target_link_libraries(redkit_consumer PRIVATE redkit::redkit)
add_test(NAME redkit_consumer COMMAND redkit_consumer)

foreach(component IN LISTS REDKIT_EXPECT_COMPONENTS)
  if(NOT TARGET redkit::${component})
    message(FATAL_ERROR "redkit::${component} is missing, though redkit's own build found its library")
  endif()
  add_executable(redkit_consumer_${component} "${redkit_consumer_sources}/${component}.cpp")
  target_link_libraries(redkit_consumer_${component} PRIVATE redkit::${component})
  add_test(NAME redkit_consumer_${component} COMMAND redkit_consumer_${component})
endforeach()
