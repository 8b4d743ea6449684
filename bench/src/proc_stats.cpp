#include "proc_stats.h"

#include <dirent.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace bench {

namespace {

bool
read_file(const std::string &path, std::string *out)
{
    std::ifstream      f(path);
    std::stringstream  ss;

    if (!f) {
        return false;
    }

    ss << f.rdbuf();
    *out = ss.str();

    return true;
}


bool
field_kb(std::string_view text, std::string_view name, uint64_t *out)
{
    size_t  pos = 0;

    while (pos < text.size()) {
        size_t            eol = text.find('\n', pos);
        std::string_view  line = text.substr(pos, eol == text.npos
                                                  ? text.npos : eol - pos);

        if (line.substr(0, name.size()) == name) {
            std::string  digits(line.substr(name.size()));
            char        *end;

            *out = strtoull(digits.c_str(), &end, 10);
            return end != digits.c_str();
        }

        if (eol == text.npos) {
            break;
        }
        pos = eol + 1;
    }

    return false;
}


// Parent pid (field 4) of /proc/PID/stat text, or -1.
int
parse_stat_ppid(std::string_view text)
{
    size_t  paren = text.rfind(')');

    if (paren == text.npos) {
        return -1;
    }

    std::istringstream  fields{std::string(text.substr(paren + 1))};
    std::string         state;
    int                 ppid = -1;

    fields >> state >> ppid;

    return ppid;
}

}  // namespace


Status
parse_smaps_rollup(std::string_view text, uint64_t *rss_kb,
    uint64_t *pss_kb)
{
    if (!field_kb(text, "Rss:", rss_kb) || !field_kb(text, "Pss:", pss_kb)) {
        return Status::Error("no Rss or Pss in smaps_rollup");
    }

    return Status::Ok();
}


Status
parse_stat_cpu(std::string_view text, uint64_t *ticks)
{
    size_t  paren = text.rfind(')');

    // The command name may hold spaces and parentheses: fields are
    // counted from its closing parenthesis, field 3 first.
    if (paren == text.npos) {
        return Status::Error("malformed stat");
    }

    std::istringstream  fields{std::string(text.substr(paren + 1))};
    std::string         skip;
    uint64_t            utime = 0, stime = 0;

    for (int field = 3; field < 14; field++) {
        fields >> skip;
    }
    fields >> utime >> stime;

    if (!fields) {
        return Status::Error("malformed stat");
    }

    *ticks = utime + stime;
    return Status::Ok();
}


ProcSample
sample_process(const ProcTarget &target)
{
    ProcSample   s;
    std::string  dir = "/proc/" + std::to_string(target.pid) + "/";
    std::string  text;

    s.pid = target.pid;
    s.role = target.role;

    if (!read_file(dir + "smaps_rollup", &text)
        || !parse_smaps_rollup(text, &s.rss_kb, &s.pss_kb).ok()
        || !read_file(dir + "stat", &text)
        || !parse_stat_cpu(text, &s.cpu_ticks).ok())
    {
        return s;
    }

    s.ok = true;
    return s;
}


std::vector<ProcTarget>
find_targets(const std::vector<int> &pids, int nginx_master, int daemon_pid,
    int redis_pid)
{
    std::vector<ProcTarget>  targets;
    DIR                     *d;
    struct dirent           *e;
    std::string              cmdline, comm, stat;

    for (int pid : pids) {
        targets.push_back({pid, "process"});
    }
    if (!pids.empty()) {
        return targets;
    }

    if (daemon_pid > 0) {
        targets.push_back({daemon_pid, "signalrd"});
    }

    if (redis_pid > 0) {
        targets.push_back({redis_pid, "redis-server"});
    }

    d = opendir("/proc");
    while (d != nullptr && (e = readdir(d)) != nullptr) {
        int  pid = atoi(e->d_name);

        if (pid <= 0) {
            continue;
        }

        std::string  dir = std::string("/proc/") + e->d_name + "/";

        if (!read_file(dir + "cmdline", &cmdline)
            || !read_file(dir + "comm", &comm)
            || !read_file(dir + "stat", &stat))
        {
            continue;
        }

        bool  worker = cmdline.rfind("nginx: worker process", 0) == 0;

        if (worker && (nginx_master == 0
                       || parse_stat_ppid(stat) == nginx_master))
        {
            targets.push_back({pid, "nginx worker"});
        } else if (daemon_pid == 0 && nginx_master == 0
                   && comm == "signalrd\n")
        {
            targets.push_back({pid, "signalrd"});
        }
    }

    if (d != nullptr) {
        closedir(d);
    }

    return targets;
}

}  // namespace bench
