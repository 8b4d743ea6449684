#include "results.h"

#include <algorithm>

namespace bench {

void
Results::error(const std::string &text, uint64_t n)
{
    if (errors.size() >= kMaxErrorKinds && errors.count(text) == 0) {
        errors["other"] += n;
        return;
    }

    errors[text] += n;
}


uint64_t
Results::counter(const std::string &name) const
{
    auto  it = counters.find(name);

    return it == counters.end() ? 0 : it->second;
}


void
Results::merge(const Results &other)
{
    for (const auto &[name, n] : other.counters) {
        counters[name] += n;
    }

    for (const auto &[name, h] : other.histograms) {
        histograms[name].merge(h);
    }

    for (const auto &[text, n] : other.errors) {
        error(text, n);
    }

    window_us = std::max(window_us, other.window_us);
    cpu_user_us += other.cpu_user_us;
    cpu_system_us += other.cpu_system_us;
}


json_t *
Results::to_json() const
{
    json_t  *c = json_object(), *h = json_object(), *e = json_object();

    for (const auto &[name, n] : counters) {
        json_object_set_new(c, name.c_str(), json_integer(json_int_t(n)));
    }

    for (const auto &[name, hist] : histograms) {
        json_object_set_new(h, name.c_str(), hist.to_json());
    }

    for (const auto &[text, n] : errors) {
        json_object_set_new(e, text.c_str(), json_integer(json_int_t(n)));
    }

    return json_pack("{sosososIsIsI}",
                     "counters", c, "histograms", h, "errors", e,
                     "window_us", json_int_t(window_us),
                     "cpu_user_us", json_int_t(cpu_user_us),
                     "cpu_system_us", json_int_t(cpu_system_us));
}


Status
Results::from_json(const json_t *json, Results *out)
{
    json_t      *c, *h, *e, *v;
    json_int_t   window, user, sys;
    const char  *key;
    Results      r;

    if (json_unpack(const_cast<json_t *>(json), "{sosososIsIsI}",
                    "counters", &c, "histograms", &h, "errors", &e,
                    "window_us", &window, "cpu_user_us", &user,
                    "cpu_system_us", &sys) != 0)
    {
        return Status::Error("malformed results");
    }

    json_object_foreach(c, key, v) {
        r.counters[key] = uint64_t(json_integer_value(v));
    }

    json_object_foreach(h, key, v) {
        Status  s = Histogram::from_json(v, &r.histograms[key]);
        if (!s.ok()) {
            return s;
        }
    }

    json_object_foreach(e, key, v) {
        r.errors[key] = uint64_t(json_integer_value(v));
    }

    r.window_us = window;
    r.cpu_user_us = user;
    r.cpu_system_us = sys;
    *out = std::move(r);

    return Status::Ok();
}

}  // namespace bench
