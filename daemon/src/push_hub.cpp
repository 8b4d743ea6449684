#include "push_hub.h"

#include <cstring>
#include <string>

namespace signalrd {

void PushHub::on_message(const ConnectionInfo &connection, sr_message_t &msg)
{
    bool invocation = msg.type == SR_MSG_INVOCATION || msg.type == SR_MSG_STREAM_INVOCATION;

    if (!invocation || msg.invocation_id == nullptr) {
        return;
    }
    std::string error = std::string("Unknown method '") + (msg.target ? msg.target : "") +
                        "': hub '" + connection.hub + "' only sends to its clients.";
    sr_message_t completion;

    sr_message_init(&completion, SR_MSG_COMPLETION);
    completion.invocation_id = strdup(msg.invocation_id);
    completion.error = strdup(error.c_str());
    sink_.send(connection.id, completion);
    sr_message_clear(&completion);
}

}  // namespace signalrd
