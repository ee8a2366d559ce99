"""``python -m tfrobust.cli`` is the ``tfrobust`` console script."""

from tfrobust.cli.main import main

if __name__ == "__main__":
    main()
