// Several worker processes share one list of jobs through Redis:
//  - a RedisLock per job, so two workers never run the same job at once,
//    and a "done" key checked under that lock, so a job runs exactly once;
//  - the job configs through one RedisCache::get_or_set per config: every
//    worker asks for every config at the same moment, and each config is
//    loaded once across all processes (the others wait for that load);
//  - RedisCounters for the jobs completed and each job's runs.
// The program starts the workers (fork + exec of itself), waits for them,
// and checks from Redis that every job ran exactly once and every config
// was loaded once; it exits non-zero if not.
//   REDIS_URL=redis://127.0.0.1:6379/0 ./redkit_example_job_runner
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <redkit/redkit.hpp>

using namespace std::chrono_literals;

namespace {

constexpr int kWorkers = 4;
constexpr int kJobs = 12;
const char* const kConfigs[] = {"resize", "thumbnail", "archive"};  // job i uses kConfigs[i % 3]
constexpr int kConfigCount = 3;

redkit::Redis connect() {
  const char* url = std::getenv("REDIS_URL");
  return redkit::Redis(redkit::Options::from_uri(url ? url : "redis://127.0.0.1:6379/0"));
}

// Every key of one run starts with the prefix, so runs never collide.
struct Keys {
  std::string prefix;
  std::string job_lock(int job) const { return prefix + "job:" + std::to_string(job); }
  std::string done(int job) const { return prefix + "done:" + std::to_string(job); }
  std::string runs(int job) const { return prefix + "runs:" + std::to_string(job); }
  std::string loads(const std::string& config) const { return prefix + "loads:" + config; }
  std::string completed() const { return prefix + "completed"; }
  std::string config_prefix() const { return prefix + "config:"; }
  std::string ready() const { return prefix + "ready"; }
  std::string start() const { return prefix + "start"; }
};

// ---- a worker process --------------------------------------------------------

int worker_main(int index, const Keys& k) {
  redkit::Redis redis = connect();
  redkit::RedisCache<std::string> configs(redis, k.config_prefix());
  redkit::RedisCounter<long long> completed(redis, k.completed());

  // The slow source of a config (a file share, a database): the load is
  // counted in Redis, so the parent can check it happened once in total.
  auto load_config = [&](const std::string& name) {
    redkit::RedisCounter<long long>(redis, k.loads(name)).incr();
    std::this_thread::sleep_for(300ms);
    return "config of " + name + " jobs";
  };
  auto config = [&](const std::string& name) {
    return configs.get_or_set(name, [&] { return load_config(name); });
  };

  // Start together, so the config reads below really overlap.
  redis.command({"RPUSH", k.ready(), std::to_string(index)});
  {
    redkit::Lease lease = redis.lease();
    if (lease.command(redkit::Command{"BLPOP"}.key(k.start()).arg("10"), 11s).is_nil()) {
      std::cerr << "worker " << index << ": no start signal within 10 s\n";
      return 1;
    }
  }

  for (const char* name : kConfigs) config(name);
  const redkit::CacheStats after_startup = configs.stats();

  // Every worker walks the same list in the same order, so they meet on
  // every job: the lock decides who runs it.
  std::vector<int> ran;
  int held = 0;  // jobs another worker was running
  int done = 0;  // jobs another worker had finished
  for (int job = 0; job < kJobs; ++job) {
    redkit::RedisLock<> lock(redis, k.job_lock(job));
    if (!lock.try_lock()) {
      ++held;
      continue;
    }
    // Under the lock: a job another worker finished is not run again.
    if (redis.command({"EXISTS", k.done(job)}).integer() == 1) {
      ++done;
      lock.unlock();
      continue;
    }
    const std::string cfg = config(kConfigs[job % kConfigCount]);  // a hit: loaded at startup
    std::this_thread::sleep_for(20ms);                           // the work itself
    redis.command({"SET", k.done(job), "worker " + std::to_string(index) + " with " + cfg});
    redkit::RedisCounter<long long>(redis, k.runs(job)).incr();
    completed.incr();
    ran.push_back(job);
    lock.unlock();
  }

  std::ostringstream line;
  line << "  worker " << index << " (pid " << getpid() << "): ran jobs";
  for (int job : ran) line << ' ' << job;
  line << "; skipped " << held << " another worker held and " << done << " another had finished; loaded "
       << after_startup.loads << " config(s) itself and got " << kConfigCount - after_startup.loads
       << " from another worker's load\n";
  std::cout << line.str() << std::flush;
  return 0;
}

// ---- the parent -----------------------------------------------------------------

// fork + exec of this program with --worker: the child starts afresh (its
// own connections, no state of the parent's), and between fork and exec it
// only calls exec (the arguments are built before the fork).
pid_t start_worker(const char* self, int index, const std::string& prefix) {
  const std::string i = std::to_string(index);
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", self, "--worker", i.c_str(), prefix.c_str(), static_cast<char*>(nullptr));
    execl(self, self, "--worker", i.c_str(), prefix.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Removes every key of this run: the config cache's values and side keys
// ("{dddddd}<prefix>config:...:rk-meta") with RedisCache::clear(), then
// ours ("<prefix>...") and the locks' side keys ("{<prefix>job:N}:fence").
void remove_keys(redkit::Redis& redis, const Keys& k) {
  redkit::RedisCache<std::string>(redis, k.config_prefix()).clear();
  for (const std::string& pattern : {k.prefix + "*", "{" + k.prefix + "*"}) {
    std::string cursor = "0";
    do {
      redkit::Reply r = redis.command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
      cursor = r[0].string_copy();
      const redkit::ReplyView batch = r[1];
      for (std::size_t i = 0; i < batch.size(); ++i) redis.command({"UNLINK", batch[i].string()});
    } while (cursor != "0");
  }
}

int parent_main(const char* self) {
  redkit::Redis redis = connect();
  const Keys k{"example:jobs:" + std::to_string(getpid()) + ":"};
  remove_keys(redis, k);

  std::cout << kWorkers << " worker processes share " << kJobs << " jobs (a RedisLock per job) and "
            << kConfigCount << " job configs (RedisCache::get_or_set, each config wanted by every worker "
            << "at once):\n"
            << std::flush;
  std::vector<pid_t> workers;
  for (int i = 1; i <= kWorkers; ++i) {
    const pid_t pid = start_worker(self, i, k.prefix);
    if (pid < 0) {
      std::perror("fork");
      return 1;
    }
    workers.push_back(pid);
  }
  bool ok = true;
  {
    // Wait until every worker is connected and waiting, then start them all.
    redkit::Lease lease = redis.lease();
    for (int i = 0; i < kWorkers; ++i) {
      if (lease.command(redkit::Command{"BLPOP"}.key(k.ready()).arg("20"), 21s).is_nil()) {
        std::cerr << "a worker did not get ready within 20 s\n";
        ok = false;
        break;
      }
    }
  }
  redkit::Command start{"RPUSH"};
  start.key(k.start());
  for (int i = 0; i < kWorkers; ++i) start.arg("go");
  redis.command(start);
  for (pid_t pid : workers) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::cerr << "worker pid " << pid << " failed\n";
      ok = false;
    }
  }

  // The report, read back from Redis.
  const long long completed = redkit::RedisCounter<long long>(redis, k.completed()).get();
  std::ostringstream runs;
  bool exactly_once = true;
  for (int job = 0; job < kJobs; ++job) {
    const long long n = redkit::RedisCounter<long long>(redis, k.runs(job)).get();
    runs << (job ? " " : "") << n;
    exactly_once = exactly_once && n == 1;
  }
  std::ostringstream loads;
  bool loaded_once = true;
  for (const char* name : kConfigs) {
    const long long n = redkit::RedisCounter<long long>(redis, k.loads(name)).get();
    loads << (loads.tellp() > 0 ? ", " : "") << name << " " << n;
    loaded_once = loaded_once && n == 1;
  }
  std::cout << "jobs completed (RedisCounter): " << completed << " of " << kJobs << "\n"
            << "runs per job 0.." << kJobs - 1 << ": " << runs.str()
            << (exactly_once ? "  -> each job ran exactly once\n" : "  -> NOT exactly once\n")
            << "config loads across all " << kWorkers << " processes: " << loads.str()
            << (loaded_once ? "  -> each config was loaded once; the other workers waited for that load\n"
                            : "  -> NOT once per config\n");
  remove_keys(redis, k);

  ok = ok && completed == kJobs && exactly_once && loaded_once;
  std::cout << (ok ? "OK: the locks kept every job to one run, and get_or_set kept every config to one load\n"
                   : "FAILED: see above\n");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 4 && std::strcmp(argv[1], "--worker") == 0) {
      return worker_main(std::atoi(argv[2]), Keys{argv[3]});
    }
    return parent_main(argv[0]);
  } catch (const redkit::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
