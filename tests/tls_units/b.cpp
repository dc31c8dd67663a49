// A second file including <redkit/tls.hpp> (see main.cpp).
#include <redkit/tls.hpp>

void enable_tls_again() { redkit::enable_tls(); }
