include(FetchContent)
FetchContent_Declare(redkit
  GIT_REPOSITORY "${REDKIT_GIT_REPOSITORY}"  # the URL or path you clone redkit from
  GIT_TAG        main)                       # no release tags yet: a branch or a commit id
FetchContent_MakeAvailable(redkit)
