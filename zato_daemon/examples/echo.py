"""demo.echo: returns its input unchanged."""

from zato_daemon import Service


class Echo(Service):
    """Returns the request payload as the response payload."""

    name = 'demo.echo'

    def handle(self):
        self.response.payload = self.request.payload
