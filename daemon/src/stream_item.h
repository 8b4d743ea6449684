// A Stream's item carrying a fragment, in the IPC form of a hub message (MessagePack,
// docs/ipc.md), written straight from the fragment.
//
// Design note: every streamed fragment was built into a jansson object (an allocation
// for the object, each of its four strings and each key's slot), walked into MessagePack
// by the shared library and freed again. The item always has the same five fields, so
// its bytes are written here, the same bytes sr_message_encode_payload() writes for it
// (daemon/tests/stream_item_test.cpp compares the two).

#pragma once

#include <string>

#include <signalr/buf.h>

#include "chat_types.h"

namespace signalrd {

// Appends the StreamItem to out. False, with out as it was, when a string is not valid
// UTF-8 (the general path refuses such a string too) or out cannot grow.
bool append_stream_item(sr_buf_t *out, const std::string &invocation_id, const Fragment &f);

}  // namespace signalrd
