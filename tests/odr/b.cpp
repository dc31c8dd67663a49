// See a.cpp.
#include <redkit/redkit.hpp>

int redkit_odr_b() { return 0; }
