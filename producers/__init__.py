"""Publishing events: the keyed event producer, input parsing, the shop simulator and the
command API. A wing: it imports the floor (ecom) and the contracts (schemas), never
consumers/ or streams/."""
