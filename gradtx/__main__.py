"""``python -m gradtx``: the digits demo (see ``gradtx.demo``)."""

from gradtx.demo import main

if __name__ == "__main__":
    main()
