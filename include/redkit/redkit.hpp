/// @file redkit.hpp
/// Includes every redkit header except json.hpp (needs nlohmann/json) and
/// compressed.hpp (needs libzstd).
#pragma once

#include "redkit/cache.hpp"
#include "redkit/cluster.hpp"
#include "redkit/command.hpp"
#include "redkit/connection.hpp"
#include "redkit/counter.hpp"
#include "redkit/error.hpp"
#include "redkit/event.hpp"
#include "redkit/lease.hpp"
#include "redkit/lock.hpp"
#include "redkit/options.hpp"
#include "redkit/rate_limiter.hpp"
#include "redkit/redis.hpp"
#include "redkit/redlock.hpp"
#include "redkit/reply.hpp"
#include "redkit/script.hpp"
#include "redkit/semaphore.hpp"
#include "redkit/serializer.hpp"
#include "redkit/slot.hpp"
#include "redkit/version.hpp"
