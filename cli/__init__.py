"""The command line on top of every stage: the ``sddpm`` dispatcher and the demo."""
