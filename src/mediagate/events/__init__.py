"""RabbitMQ: the queue topology, the messages on it, and publishing processing jobs."""
