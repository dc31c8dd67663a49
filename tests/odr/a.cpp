// Two translation units include every redkit header; the link fails if a
// header defines a function or variable that is not inline.
#include <redkit/redkit.hpp>

int redkit_odr_b();

int redkit_odr_a() { return 0; }

int main() { return redkit_odr_a() + redkit_odr_b(); }
