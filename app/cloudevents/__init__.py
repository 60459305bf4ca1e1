"""CloudEvents (https://cloudevents.io, specversion 1.0), opt-in per channel or for all of them.

- Out: an event of a channel with CloudEvents on carries the attributes in the binary content mode
  of the CloudEvents AMQP binding: `cloudEvents_*` headers, the data as the body (`stamping`).
- In over HTTP: such a channel also takes a CloudEvent, in structured mode (a JSON body
  `application/cloudevents+json`) or binary mode (`ce-*` headers, the data as the body); its `id`
  is the event's `message_id` and idempotency key, its `type` must name the channel (`http`).
- In over AMQP: a message in binary mode (`cloudEvents_*` or `cloudEvents:*` headers) is read the
  same way (`stamping.amqp_attributes`).

With CloudEvents off for a channel, none of this happens: its events, answers and messages are
what they were before CloudEvents existed.
"""
