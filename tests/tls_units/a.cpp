// Includes <redkit/tls.hpp> and nothing else: enough to register TLS.
#include <redkit/tls.hpp>
