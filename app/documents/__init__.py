"""What the gateway tells others about itself, generated from the catalog: the AsyncAPI document
(consumers and AMQP producers), the OpenAPI document (HTTP producers), and the pages that render
them, served by the gateway with their renderers, offline."""
