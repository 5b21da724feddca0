"""The game: agent activities, points, badges and leaderboard ranking (``activity``,
``scoring``, ``badges``, ``leaderboard``)."""
